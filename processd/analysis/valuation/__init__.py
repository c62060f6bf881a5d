"""Exact valuation of Uniswap V2-style swaps against known pool reserves (issue 17): integer math only.

``amm`` is UniswapV2Library in Python ints; ``sandwich`` and ``backrun`` find the optimal front-run and
back-run sizes (``frontrun`` has the front-run's closed forms; ``exact_in`` runs an exact-input victim's sandwich
steps fused); ``pairs`` computes pair addresses (CREATE2) per factory; ``calldata`` reads a V2 router call's
path without the full decoder (for gathering reserves before the analysis); ``state`` holds the reserves input;
``value`` puts them together for one decoded swap. Nothing here does I/O. docs/valuation.md has the math.
"""
