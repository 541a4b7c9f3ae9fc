"""Generators behind one interface (fit / sample / save / load). Importing this registers all of them."""

# "from ehrdiff.models import X", not "import ehrdiff.models.X": the latter binds the name "ehrdiff" here to the
# top-level package, hiding the submodule ehrdiff.models.ehrdiff.

from ehrdiff.models.base import (REGISTRY, ExperimentRole, Generator, build_model, experiment_models,
                                 load_entry_points, load_model, model_class, register)
from ehrdiff.models import ehrdiff  # noqa: F401,E402  (registers ehrdiff)
from ehrdiff.models import medgan  # noqa: F401,E402
from ehrdiff.models import emrwgan  # noqa: F401,E402
from ehrdiff.models import corgan  # noqa: F401,E402
from ehrdiff.models import reference  # noqa: F401,E402  (registers marginals, resample)
from ehrdiff.models import dp_marginals  # noqa: F401,E402  (registers dp-marginals)
from ehrdiff.models import mst  # noqa: F401,E402  (registers mst; mbi is imported only to fit)

load_entry_points()  # third-party generators (the "ehrdiff.models" entry-point group)

__all__ = ["REGISTRY", "ExperimentRole", "Generator", "build_model", "experiment_models", "load_model",
           "model_class", "register"]
