-- fail: window_function
SELECT race, COUNT(*) AS n, ROW_NUMBER() OVER (ORDER BY race) AS r FROM pums GROUP BY race
