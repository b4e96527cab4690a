"""Work orders: a shared entity with its own DTDL model, lifecycle and webhook outbox."""
