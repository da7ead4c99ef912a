"""A private descriptor pool for Portway's copy of the rstream schema.

The official SDK registers a file of the same name and package in protobuf's default pool; sharing it
would make the two packages impossible to import in one process (interop tests do exactly that).
"""

from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
for _module in (descriptor_pb2, timestamp_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
