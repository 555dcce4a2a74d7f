parallel = dict(pipeline=2)
print(parallel)
