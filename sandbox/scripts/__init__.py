"""Script jobs' isolation: an analyst's Python run under bubblewrap, seccomp, rlimits and a pids cgroup.

``isolation`` is the worker's side (it starts the trusted ``launcher`` in a process of its own);
``launcher``, ``confine`` and ``collect`` are that launcher, which imports only the standard library
(and libseccomp's bindings), so that it starts in milliseconds; ``inside/`` holds what the script sees
(``sandbox_io`` and the bootstrap that runs the script), bound read-only into the sandbox.
"""
