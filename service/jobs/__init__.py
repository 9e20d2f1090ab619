"""The job path: the Redis Streams store and its Lua scripts, the worker (``python -m service.jobs.worker``)
and the queue's admin command (``python -m service.jobs.admin``)."""
