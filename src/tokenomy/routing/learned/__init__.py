"""Learned routing: score how much a prompt needs the strong model (issue 5).

``LearnedRouter.load("default")`` is the router shipped with the package, trained on all
of RouteLLM's MMLU evaluation data (``mmlu_dev.csv``: lm-sys/RouteLLM, Apache-2.0; MMLU,
Hendrycks et al.). ``metrics`` holds RouteLLM's APGR / CPT measures, ``training`` the
trainer and subject-grouped cross-validation.
"""

from tokenomy.routing.learned.router import LearnedRouter, RouterError

__all__ = ["LearnedRouter", "RouterError"]
