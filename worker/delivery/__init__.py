"""One lead to one contact: the run (Delivery), outcome policy as data, the fleet
limiter and daily quota, the per-email lock, the Constant Contact client and request bodies.
"""
