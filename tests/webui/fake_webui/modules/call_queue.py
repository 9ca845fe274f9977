"""queue_lock: the lock A1111 1.10.1 holds around every generation (modules/call_queue.py)."""
import threading

queue_lock = threading.Lock()
