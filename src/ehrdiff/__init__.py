"""ehrdiff: diffusion models for realistic synthetic electronic health records (EHRDiff, Yuan et al., TMLR 2024)."""

__version__ = "0.1.0"

__all__ = ["EHRDiff", "Table", "evaluate", "load_model", "read_table", "write_table", "__version__"]


def __getattr__(name):
    # Lazy imports keep `import ehrdiff` and the CLI's start fast (torch loads only when a model is used).
    if name == "EHRDiff":
        from ehrdiff.models.ehrdiff import EHRDiff
        return EHRDiff
    if name == "load_model":
        from ehrdiff.models import load_model
        return load_model
    if name == "evaluate":
        from ehrdiff.evaluation import evaluate
        return evaluate
    if name in ("Table", "read_table", "write_table"):
        import ehrdiff.data as data
        return getattr(data, name)
    raise AttributeError(f"module 'ehrdiff' has no attribute {name!r}")
