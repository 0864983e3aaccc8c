"""Search: the search-space protocol and evolutionary search on optuna."""
from automtl.search.space import Candidate, SearchSpace

__all__ = ["Candidate", "SearchSpace"]
