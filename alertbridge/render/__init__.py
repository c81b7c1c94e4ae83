"""Rendering: ``AlertGroup`` → WeCom message bodies within WeCom's byte limits.

``Renderer`` compiles the Jinja templates (built-in ``templates/`` plus an
optional operator directory that overrides them) and splits groups too big
for one message between alerts. ``sample_group`` is the built-in sample data
that ``check-config`` and ``send-test`` render.
"""

from __future__ import annotations

from alertbridge.render.renderer import Renderer
from alertbridge.render.sample import sample_group

__all__ = ["Renderer", "sample_group"]
