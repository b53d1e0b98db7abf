"""The four extender verbs, one module each; every verb is a plain function `(args, ctx) -> result`.

The HTTP layer (scheduler.http) only decodes, calls one of these, and encodes: a verb knows nothing of
HTTP, so each is unit-tested by calling it with wire models and an ExtenderContext.
"""
