"""The Processing provider `seamless` and what the desktop shows around it."""
