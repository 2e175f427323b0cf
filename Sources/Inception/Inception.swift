@_exported import InceptionEngine
