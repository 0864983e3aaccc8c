"""Registers the built-in spaces in :data:`automtl.registry.SPACES` (imported on first look-up)."""
from __future__ import annotations

from automtl.registry import SPACES
from automtl.spaces.policy import build_policy_space
from automtl.spaces.toy import LayeredToySpace

SPACES.register_module("toy_layered", module=LayeredToySpace)
SPACES.register_module("automtl_policy", module=build_policy_space)
