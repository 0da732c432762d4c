"""``python -m tests.tfserving --port=8500 --rest_api_port=8501 --model_config_file=...``: see cli.py."""

from tests.tfserving.cli import main

raise SystemExit(main())
