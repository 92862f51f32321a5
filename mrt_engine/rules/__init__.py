"""Rules (F1): model, compiled matcher and dry run."""

from mrt_engine.rules.matcher import CompiledRule, Decision, RuleHit, RuleSet
from mrt_engine.rules.model import RuleConfig

__all__ = ["CompiledRule", "Decision", "RuleConfig", "RuleHit", "RuleSet"]
