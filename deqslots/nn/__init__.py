"""What both model packages build on: the initialisation schemes (``initialization``), the checks on the images a
model is given (``inputs``), and copying frozen config dataclasses with changed fields (``fields``).

Uses torch only; both :mod:`deqslots.slot_attention.module` and :mod:`deqslots.slate` import it, it imports neither.
"""
