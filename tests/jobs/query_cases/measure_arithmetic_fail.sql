-- fail: aggregate_argument, column: pums.income
SELECT race, SUM(p.income - t.tax_paid + 1) AS net FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY race
