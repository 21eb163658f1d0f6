"""A threshold segmenter that takes its time, so a test can kill a run part-way."""

from __future__ import annotations

import time

from baselines.threshold import ThresholdSegmenter


class SlowThreshold(ThresholdSegmenter):
    def fit(self, images, masks):
        time.sleep(0.4)
        return super().fit(images, masks)


def slow_threshold(random_state: int = 0) -> SlowThreshold:
    return SlowThreshold(random_state=random_state)
