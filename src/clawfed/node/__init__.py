"""The department agent: its session with the coordinator and the tasks it runs."""
