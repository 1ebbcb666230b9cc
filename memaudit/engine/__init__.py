"""The engine: the one batched forward pass, the table of products, the keyed stores (products cache,
journal), what results depend on (identity), probe collection and calls, and the run loop."""
