"""Training over several processes and hosts on MXNet's dist_sync KVStore.

launch.py starts the scheduler, the parameter servers and the workers (locally, or over
ssh with ssh.py) and stops them all together; guard.py, which every such process runs
under, ends a role's processes when the launcher or its link dies. server.py is the
servers' code (their Adam state in checkpoints, and no pickle on the wire), and
kvstore.py the workers' side of the KVStore the Trainers use. Nothing here imports
train/: training imports kvstore and server, never the reverse.
"""
