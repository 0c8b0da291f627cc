"""(placeholder: the JAX reference is being written)"""
