"""``python -m alertbridge.testing.fake_wecom``: see ``cli``."""

from alertbridge.testing.fake_wecom.cli import main

main()
