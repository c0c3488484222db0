"""The run store: atomic files and locks (`files`), trained runs on disk (`runs`) and the
measurements cached beside them (`measurements`)."""
