-- fail: aggregate_not_allowed
SELECT race, COUNT(*) AS n FROM pums WHERE SUM(income) > 0 GROUP BY race
