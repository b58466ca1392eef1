"""Data: one reader per data set, apart from the generic split and balancing code.

    leandojo      LeanDojo Benchmark 4 rows, intro/apply labels, goal spans in ByT5 input
"""
