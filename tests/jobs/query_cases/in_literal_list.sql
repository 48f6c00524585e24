-- ok
SELECT industry, COUNT(*) AS n FROM tax WHERE industry IN ('C', 'D') GROUP BY industry
