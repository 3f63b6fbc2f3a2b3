"""A study on a Ray cluster: `access` (the dashboard's address and Ray's token, no Ray import),
`jobs` (the Jobs API: `ablate status | logs | stop`), `submit` (`ablate submit`: checks, then the
study as a Ray job) and `nodes` (Ray core: the live nodes, per-node pre-flight, why trials wait).
Nothing is imported here, so naming one module does not load Ray."""
