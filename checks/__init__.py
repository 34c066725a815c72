"""The billing feed's contracts (Pandera) and the Dagster asset checks built on them."""
