"""Provider tests: load the tokenizer package once, outside the warnings-as-errors net.

`bpe_openai` 0.1.4 reads its data with the deprecated `importlib.resources.open_binary`,
which warns on first use; the warning is the package's, not ours.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from p402.pipeline.tokens import warm

    warm(("o200k_base", "cl100k_base"))
