"""Divergence: noticed while it happens, so the run can roll back and go on gently.

Two signs, each seen in the field on small contrastive runs. The training loss leaves the
level it had reached and stays up (a spike that one good step would not explain), or
is no longer a number. And validation collapses: a model that found half its images
finds a fraction of that an epoch later. Either way the run goes back to its last good
checkpoint with a lower learning rate (training/main.py); one noisy step is never enough.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# The mean loss over WINDOW steps must exceed the best such mean so far by RISE (and by
# MARGIN, for losses near zero) to count as a spike. Measured on the sweep's families:
# healthy runs never came within a factor of 1.2 of it once past warm-up.
WINDOW = 5
RISE = 1.3
MARGIN = 0.3
# Back at chance: a loss that had fallen under FELL of chance level (ln of the batch, the
# loss of a model that cannot tell its pairs apart) and is back above BACK of it. At small
# batches chance is close to any level a weak model reaches, so this is caught apart.
FELL = 0.85
BACK = 0.97
# Validation collapse: the score falls under this share of the best epoch's, once the
# best is clearly above chance (recall@1+5+10 of at least MIN_SCORE).
COLLAPSE = 0.5
MIN_SCORE = 0.3


@dataclass
class DivergenceGuard:
    chance: float  # the loss of a model that tells nothing apart: ln(contrastive batch)
    floor: float = math.inf  # lowest windowed mean loss reached
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    def step(self, loss: float) -> str | None:
        """Why training diverged at this step, or None."""
        if not math.isfinite(loss):
            return f"loss became {loss}"
        self.recent.append(loss)
        mean = sum(self.recent) / len(self.recent)
        # Judged on a full window only; but the level counts from the first step, whose
        # loss is taken before any update: a rate that wrecks the model within a few
        # steps is caught against the level the run started from.
        if len(self.recent) == WINDOW:
            if mean > self.floor * RISE and mean > self.floor + MARGIN:
                return f"loss rose to {mean:.3f} from {self.floor:.3f}"
            if self.floor < FELL * self.chance and mean > BACK * self.chance:
                return f"loss rose to {mean:.3f} from {self.floor:.3f}, back at chance level"
        self.floor = min(self.floor, mean)
        return None

    def validation(self, score: float, best: float) -> str | None:
        """Why this epoch's validation score counts as a collapse, or None."""
        if best >= MIN_SCORE and score < COLLAPSE * best:
            return f"validation score fell to {score:.3f} from {best:.3f}"
        return None

    def restart(self, floor: float) -> None:
        """After a roll-back or a resume: the level the checkpoint had reached (a lower
        one reached after it would make the restored model itself look like a spike)."""
        self.floor = floor
        self.recent.clear()
