-- fail: aggregate_output
SELECT race, COUNT(*) * 100 AS n FROM pums GROUP BY race
