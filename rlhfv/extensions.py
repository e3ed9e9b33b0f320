"""Code named by import path (`module:attr`), and the research code that lives beside the product.

The installed packages (`rlhfv`, `data_tools`) hold the product. The synthetic worlds and the experiments that train
on them live in the source checkout's `experiments/` package, which is not installed (as `bench/` is not). The
product reaches them only here, by an import path that a recipe names (`callbacks:`) or that a research-only mode
names (`rlhfv iterate`'s `synthetic:` block, `labeler: truth`, the `tiny:` reward models), so that:
- an rlhfv installed without its checkout fails with one line saying what is missing, not an ImportError deep in
  a run;
- a recipe that still names a module from before the move is told its new path.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from data_tools.errors import CommandError


RESEARCH_PACKAGE = "experiments"
# old module prefix -> new one (the research code moved out of the installed packages)
MOVED = (
    ("rlhfv.experiments", "experiments"),
    ("rlhfv.reward.synthetic", "experiments.fact_rlhf_data"),
    ("data_tools.synthetic", "experiments.synthetic"),
)
# the checkout that holds this rlhfv (for an editable install or PYTHONPATH=checkout)
CHECKOUT = Path(__file__).resolve().parents[1]


def moved_to(module: str) -> str | None:
    """The new name of a module that moved to `experiments/`, or None."""
    for old, new in MOVED:
        if module == old or module.startswith(old + "."):
            return new + module[len(old) :]
    return None


def _make_research_importable() -> None:
    # A console script does not put the working folder on sys.path, and an editable install maps only the
    # installed packages: add the checkout that holds this rlhfv, when it has the research package.
    if (CHECKOUT / RESEARCH_PACKAGE / "__init__.py").is_file() and str(CHECKOUT) not in sys.path:
        sys.path.append(str(CHECKOUT))


def import_module(name: str, what: str = "module"):
    """`importlib.import_module(name)` with one-line errors for moved modules and a missing research package."""
    new = moved_to(name)
    if new is not None:
        raise CommandError(f"{what}: {name} moved to {new} (the research code is in the checkout's experiments/)")
    if name.split(".")[0] == RESEARCH_PACKAGE:
        _make_research_importable()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != RESEARCH_PACKAGE and (error.name or "").split(".")[0] == RESEARCH_PACKAGE:
            raise CommandError(f"{what}: no module {error.name} in the research package experiments/") from None
        if error.name == RESEARCH_PACKAGE:
            raise CommandError(
                f"{what}: {name} is research code in the source checkout's experiments/ package, which is not "
                "installed; run from a clone of rlhfv (editable install or PYTHONPATH=<clone>)"
            ) from None
        raise


def import_object(spec: str, what: str = "object"):
    """`module:attr` -> that attribute (a class, a function), with the errors of `import_module`."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise CommandError(f"{what}: {spec!r} is not `module:attr`")
    new = moved_to(module)
    if new is not None:
        raise CommandError(
            f"{what}: {spec} moved to {new}:{name} (the research code is in the checkout's experiments/)"
        )
    loaded = import_module(module, what)
    try:
        return getattr(loaded, name)
    except AttributeError:
        raise CommandError(f"{what}: module {module} has no {name!r}") from None
