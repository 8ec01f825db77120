"""cmp-kg: knowledge graph and query service on exercise for chronic musculoskeletal pain.

Decision support for clinicians and guideline authors; never advice to patients.
"""

__version__ = "0.1.0"
