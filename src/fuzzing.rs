//! Entry points for the fuzz targets and the replay tests; not a stable API.
