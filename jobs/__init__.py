"""Job kinds: a validated spec becomes a plan, the plan runs on an engine, the engine returns a raw output.

Nothing here knows about Flask, the database or the queue; ``sandbox`` drives it.
"""
