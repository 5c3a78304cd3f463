"""Where a profile's model stages run besides this process ("local"). Each backend is a folder here whose stages
keep the `Stage` shape (`load / run_batch / close`, see `stages/base.py`), so a profile swaps a local stage for
a remote one and nothing above the engine changes. Empty until the Triton backend lands."""
