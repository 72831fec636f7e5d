"""nenqa: evidence-grounded answers about neuroendocrine neoplasm drug trials."""

__version__ = "0.1.0"
