"""Stacks: ``DataStack`` (stateful) and ``ApiStack`` (stateless), see each module for the split."""

from infra.stacks.api_stack import ApiStack
from infra.stacks.data_stack import DataStack

__all__ = ["ApiStack", "DataStack"]
