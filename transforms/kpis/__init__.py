"""The KPI registry (``registry``) and the rule book generated from it (``rulebook``)."""
