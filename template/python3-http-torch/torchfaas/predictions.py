"""Prediction metrics a handler declares: what its answers look like, in Prometheus.

The runtime knows nothing of classes or values; a handler lists the series its
log fields feed in its `prediction_metrics` class attribute, each read from one
field its `log_fields()` returns, on 200 answers only:

    ValueHistogram("prediction_mean", "diabetes_prediction", "Mean predicted value.",
                   buckets=(50, 100, 150, 200, 250, 300))      # a regression
    ValueHistogram("top1_prob", "top1_probability", "Top-1 probability.",
                   buckets=CONFIDENCE_BUCKETS)                  # a classifier's confidence
    LabelCounter("top1_class", "predicted_class", "Answers by predicted class.",
                 values=("cat", "dog"))                         # a few known classes

Each becomes `torchfaas_<name>` with the usual `function`, `model_name` and
`model_version` labels. A label counter's label takes only the declared values
(anything else counts as `other`): predicted values never become unbounded labels.
"""
from dataclasses import dataclass
from typing import ClassVar

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
OTHER = "other"


@dataclass(frozen=True)
class ValueHistogram:
    """A histogram of a numeric log field (a number per 200 answer)."""
    field: str
    name: str
    help: str
    buckets: tuple = CONFIDENCE_BUCKETS
    kind: ClassVar[str] = "histogram"

    @property
    def queried_as(self) -> str:
        """The stem a query names (its _bucket, _sum and _count series)."""
        return f"torchfaas_{self.name}"


@dataclass(frozen=True)
class LabelCounter:
    """A counter of a string log field, labelled `label` with one of `values` (else `other`)."""
    field: str
    name: str
    help: str
    values: tuple = ()
    label: str = "prediction"
    kind: ClassVar[str] = "counter"

    @property
    def queried_as(self) -> str:
        """The series a query names."""
        return f"torchfaas_{self.name}_total"

    def label_of(self, value) -> str:
        value = str(value)
        return value if value in self.values else OTHER


# what an image classifier usually declares: its top-1 confidence (the skeleton's and
# the classifier's `prediction_metrics`)
TOP1_PROBABILITY = ValueHistogram("top1_prob", "top1_probability",
                                  "Top-1 probability of successful predictions.")
