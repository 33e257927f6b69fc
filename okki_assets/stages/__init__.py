"""The stages: one partition's (or the account's) work, below the assets that call them."""
