"""The long-running daemon: settings, scheduler, leader election, webhook listener, metrics, notifications.
May import every layer below it; never cli/."""
