"""The data steward's pages: onboarding, the bureau's datasets, the grant queue and its policy editor, consents."""
