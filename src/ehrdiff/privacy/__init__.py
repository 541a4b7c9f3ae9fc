"""The whole private release (``--dp``): what a private model or baseline may keep about its training rows.

accounting  Gaussian mechanisms, their shares of the budget, and the composed (epsilon, delta) from Opacus's accountant
declared    the user's public declarations (``--bounds FILE``): continuous ranges and category lists
release     the private encoder: bounds, categories, one-way marginals and the row count, all noised or declared
"""
