"""The provider's algorithms, one a file; `base` holds the parameter block they share."""
