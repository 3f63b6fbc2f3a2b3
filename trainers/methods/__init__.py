"""Every method registers itself on import; one explicit line per method, sorted."""

from trainers.methods import coop, maple, mope, mpl, mudpt, pmpo, zeroshot  # noqa: F401
from trainers.methods.base import Conditioning, Edit, MethodConfig, PromptMethod, PromptPlan

__all__ = ["Conditioning", "Edit", "MethodConfig", "PromptMethod", "PromptPlan"]
