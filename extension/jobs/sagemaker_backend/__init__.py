"""The SageMaker backend: backend.py is its face to the lifecycle (the interface in ..backend_interface); sagemaker.py does (create, describe, status_from, stop, logs, cost);
sagemaker_request.py builds the CreateTrainingJob request; instances.py is the instance catalogue (GPU, memory,
price) that the form and the estimate also read. It imports nothing of the local backend.
"""
