"""The device fleet simulator: a street shaped like the seed's, realistic traffic, and scenarios."""
