import warnings

import dagster as dg

# Beta features used deliberately (see lakehouse/definitions.py) must not clutter test output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
