"""What 04_analysis and the landing page show: tables, claims, figures, the pick."""
