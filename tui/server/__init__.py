"""``sdtui serve``: the engine, the job queue and the history writer in one process, which the
app and ``sdtui generate`` reach over a Unix socket, so work outlives the terminal."""
